-- No department listed in departments_above_mean_2021 hired more employees, that year, than the quarters of
-- its name in quarterly_hires_2021 add up to (two independent computations agree). "More", not
-- "other than": two departments may share a name, and the quarters are by name. 1 when it holds.
SELECT CASE WHEN COUNT(*) = 0 THEN 1 ELSE 0 END AS quarters_add_up_to_hires_2021
FROM departments_above_mean_2021 AS d
WHERE d.hired > COALESCE((
    SELECT SUM(q.q1 + q.q2 + q.q3 + q.q4)
    FROM quarterly_hires_2021 AS q
    WHERE q.department = d.department
), 0)
