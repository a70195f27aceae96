"""`pulumi up` for the gcp stack: a thin wrapper; the program is costing.stack.gcp.build.

Config is validated, the cost review is run and the budget enforced before any resource is declared.
"""

from costing.stack import gcp
from costing.stack.component import run

run(gcp)
