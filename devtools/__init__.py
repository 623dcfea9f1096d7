"""For developers and demos, apart from careflow's core: `careflow dev` (every process on one
machine, stack.py) and `careflow demo` (synthetic flows of any pathway, demo.py)."""
