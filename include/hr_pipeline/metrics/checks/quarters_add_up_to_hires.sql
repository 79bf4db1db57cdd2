-- No department listed in departments_above_mean hired more employees, that year, than the quarters of
-- its name in hires_by_quarter add up to (two independent computations agree). "More", not
-- "other than": two departments may share a name, and the quarters are by name. 1 when it holds.
SELECT CASE WHEN COUNT(*) = 0 THEN 1 ELSE 0 END AS quarters_add_up_to_hires
FROM departments_above_mean AS d
WHERE d.hired > COALESCE((
    SELECT SUM(q.q1 + q.q2 + q.q3 + q.q4)
    FROM hires_by_quarter AS q
    WHERE q.year = d.year AND q.department = d.department
), 0)
