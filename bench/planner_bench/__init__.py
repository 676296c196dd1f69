"""The parts of the planner benchmark ``bench/placement.py`` (its docstring says what it
measures): generated and fixture hosts (``hosts``), the capacity model the baselines and the
integer program share (``capacity``), the greedy baselines (``baselines``), the integer-program
optimum and the lower bound (``optimum``), the seeded instances (``instances``) and how one
result is judged and shown (``outcome``). Pure Python, no Django; the repository root must be
on ``sys.path`` (the entry point puts it there).
"""
