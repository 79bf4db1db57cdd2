-- departments_above_mean: for each year in the data, the departments that hired more employees
-- than the mean of that year. The mean is taken over the departments that hired in that year
-- (a department with no hire that year does not count); "more" is strictly more.
-- Years are of the UTC date. Read it with: ORDER BY year, hired DESC, department
WITH hired_by_department AS (
    SELECT c.year, d.id, d.department, c.hired
    FROM (
        -- counted by department id first (integers group fast), named after
        SELECT
            CAST(EXTRACT(YEAR FROM datetime) AS INTEGER) AS year,
            department_id,
            COUNT(*) AS hired
        FROM hired_employees
        GROUP BY CAST(EXTRACT(YEAR FROM datetime) AS INTEGER), department_id
    ) AS c
    JOIN departments AS d ON d.id = c.department_id
),
mean_by_year AS (
    SELECT year, AVG(CAST(hired AS DOUBLE PRECISION)) AS mean
    FROM hired_by_department
    GROUP BY year
)
SELECT
    h.year,
    h.id,
    h.department,
    h.hired,
    m.mean
FROM hired_by_department AS h
JOIN mean_by_year AS m ON m.year = h.year
WHERE h.hired > m.mean
ORDER BY h.year, h.hired DESC, h.department
