"""`pulumi up` for the runpod stack: a thin wrapper; the program is costing.stack.runpod.build.

Config is validated, the cost review is run and the budget enforced before any resource is declared.
"""

from costing.stack import runpod
from costing.stack.component import run

run(runpod)
