"""The only place that talks to LiveKit's server API: tokens, rooms, dispatch, the dev server."""
