"""PowerDesk's custom actions for Rasa: one module per capability."""
