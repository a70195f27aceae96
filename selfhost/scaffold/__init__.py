"""`selfhost init`: a deployment folder for the user's own repository."""
