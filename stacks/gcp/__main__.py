"""`pulumi up` for the gcp stack: a thin wrapper; the program is selfhost.stack.gcp_config.build.

Config is validated, the cost review is run and the budget enforced before any resource is declared.
"""

from selfhost.stack import gcp_config as gcp
from selfhost.stack.component import run

run(gcp)
