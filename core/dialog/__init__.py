"""The dialog: message models, the bot's policy, and the service that runs conversations."""
