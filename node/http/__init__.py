"""The node's HTTP side: the JSON API, authentication and sessions, STOW-RS and the pages."""
