"""Hand-off of conversations to human agents: state in Redis (:mod:`.store`), the service the
router and the console call (:mod:`.service`), business hours (:mod:`.hours`)."""
