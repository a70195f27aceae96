"""`pulumi up` for the runpod stack: a thin wrapper; the program is selfhost.stack.runpod_config.build.

Config is validated, the cost review is run and the budget enforced before any resource is declared.
"""

from selfhost.stack import runpod_config as runpod
from selfhost.stack.component import run

run(runpod)
