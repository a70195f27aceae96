"""`pulumi up` for the aws stack: a thin wrapper; the program is costing.stack.aws.build.

Config is validated, the cost review is run and the budget enforced before any resource is declared.
"""

from costing.stack import aws
from costing.stack.component import run

run(aws)
