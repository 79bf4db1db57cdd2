-- quarterly_hires_2021: hires_by_quarter for the year 2021 (quarters of the UTC date).
-- Read it with: ORDER BY department, job
SELECT department, job, q1, q2, q3, q4
FROM hires_by_quarter
WHERE year = 2021
ORDER BY department, job
