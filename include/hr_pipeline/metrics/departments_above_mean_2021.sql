-- departments_above_mean_2021: the departments that hired more employees in 2021 than the mean
-- of the departments that hired in 2021 (see departments_above_mean).
-- Read it with: ORDER BY hired DESC, department
SELECT id, department, hired
FROM departments_above_mean
WHERE year = 2021
ORDER BY hired DESC, department
