# Core unit tests: the planner.
loom_unit_test(test_planner)
