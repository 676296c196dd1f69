"""The API's views, per resource: thin over the services and selectors the pages use."""
