-- hires_by_quarter: how many employees were hired for each job in each department, per quarter
-- of each year in the data. Quarters and years are of the UTC date (timestamps are stored in UTC).
-- Read it with: ORDER BY year, department, job
WITH hires AS (
    SELECT
        CAST(EXTRACT(YEAR FROM h.datetime) AS INTEGER) AS year,
        CAST(EXTRACT(QUARTER FROM h.datetime) AS INTEGER) AS quarter,
        d.department,
        j.job
    FROM hired_employees AS h
    JOIN departments AS d ON d.id = h.department_id
    JOIN jobs AS j ON j.id = h.job_id
)
SELECT
    year,
    department,
    job,
    SUM(CASE WHEN quarter = 1 THEN 1 ELSE 0 END) AS q1,
    SUM(CASE WHEN quarter = 2 THEN 1 ELSE 0 END) AS q2,
    SUM(CASE WHEN quarter = 3 THEN 1 ELSE 0 END) AS q3,
    SUM(CASE WHEN quarter = 4 THEN 1 ELSE 0 END) AS q4
FROM hires
GROUP BY year, department, job
ORDER BY year, department, job
