"""What the API's routes, the CLI, the demo page and the bench share: starting and ending a
session, checking an agent's config, which destinations a tool may reach. Services use the
contracts, the store, LiveKit and the provider registry; they never import a route, the
engine's job or the CLI."""
