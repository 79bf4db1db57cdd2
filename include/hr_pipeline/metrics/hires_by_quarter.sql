-- hires_by_quarter: how many employees were hired for each job in each department, per quarter
-- of each year in the data. Quarters and years are of the UTC date (timestamps are stored in UTC).
-- Read it with: ORDER BY year, department, job
WITH hires AS (
    -- counted by year, quarter, department id and job id first (integers group fast), named after
    SELECT
        CAST(EXTRACT(YEAR FROM datetime) AS INTEGER) AS year,
        CAST(EXTRACT(QUARTER FROM datetime) AS INTEGER) AS quarter,
        department_id,
        job_id,
        COUNT(*) AS hired
    FROM hired_employees
    GROUP BY
        CAST(EXTRACT(YEAR FROM datetime) AS INTEGER),
        CAST(EXTRACT(QUARTER FROM datetime) AS INTEGER),
        department_id,
        job_id
)
SELECT
    h.year,
    d.department,
    j.job,
    SUM(CASE WHEN h.quarter = 1 THEN h.hired ELSE 0 END) AS q1,
    SUM(CASE WHEN h.quarter = 2 THEN h.hired ELSE 0 END) AS q2,
    SUM(CASE WHEN h.quarter = 3 THEN h.hired ELSE 0 END) AS q3,
    SUM(CASE WHEN h.quarter = 4 THEN h.hired ELSE 0 END) AS q4
FROM hires AS h
JOIN departments AS d ON d.id = h.department_id
JOIN jobs AS j ON j.id = h.job_id
GROUP BY h.year, d.department, j.job
ORDER BY h.year, d.department, j.job
