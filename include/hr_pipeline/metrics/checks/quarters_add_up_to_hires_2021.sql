-- Every department listed in departments_above_mean_2021 hired, in 2021, as many employees as its
-- quarters in quarterly_hires_2021 add up to. 1 when it holds.
SELECT CASE WHEN COUNT(*) = 0 THEN 1 ELSE 0 END AS quarters_add_up_to_hires_2021
FROM departments_above_mean_2021 AS d
WHERE d.hired <> COALESCE((
    SELECT SUM(q.q1 + q.q2 + q.q3 + q.q4)
    FROM quarterly_hires_2021 AS q
    WHERE q.department = d.department
), 0)
