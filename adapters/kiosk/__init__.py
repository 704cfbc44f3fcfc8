"""Self-service kiosk (自助终端) channel."""
