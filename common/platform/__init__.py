"""The platform every domain stands on: settings read once from the environment, the clients
of Redis, MongoDB and Stripe, domain errors, logs, metrics, the clock, the Lua script loader,
MongoDB transactions and schema, Celery queue names, pagination."""
