-- Every department listed in departments_above_mean hired strictly more than the mean of its
-- year, and the mean is positive. 1 when it holds.
SELECT CASE WHEN COUNT(*) = 0 THEN 1 ELSE 0 END AS listed_departments_are_above_mean
FROM departments_above_mean AS d
WHERE NOT (d.hired > d.mean AND d.mean > 0)
