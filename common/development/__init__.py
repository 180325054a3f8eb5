"""Development tooling, apart from the product: the embedded servers (Redis, the MongoDB wire
server, the Stripe emulator), the process supervisor behind `flashsale run`, the demo sale and
the ports helper. Installed with the `dev` extra; the API, the workers and the domain never
import it."""
