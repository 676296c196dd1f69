"""What the API answers and accepts, per resource (read-only views of the models; requests are
validated by the services, not here)."""
