"""随申办 APP channel: signed JSON API, long-poll and websocket."""
