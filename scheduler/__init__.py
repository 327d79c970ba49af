"""The scheduler: HTTP API, job store, queues (it sends tasks by name), sweep planner, and the API's Python client."""
