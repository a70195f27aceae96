"""The money job: what a deployment costs a month, per 1M tokens and against pay-per-token APIs; its review,
reports, comparisons, diffs, price age, spot risk, charts and the gates on them."""
