"""The scheduler: HTTP API, job store, sweep planner, and the `scalespace` command line."""
