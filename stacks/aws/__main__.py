"""`pulumi up` for the aws stack: a thin wrapper; the program is selfhost.stack.aws_config.build.

Config is validated, the cost review is run and the budget enforced before any resource is declared.
"""

from selfhost.stack import aws_config as aws
from selfhost.stack.component import run

run(aws)
