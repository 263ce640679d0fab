"""What every experiment shares and no experiment owns: configs, result files, the unit runner, the sweep
engine, statistics, verdict rules and the paper's numbers. Nothing here imports a task."""
