"""`selfhost prices refresh`: each cloud's own pricing API into a dated snapshot in the user's cache folder."""
