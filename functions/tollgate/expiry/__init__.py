"""The expiry of prepaid credits: the sweep that settles each lot past its expiry (``service``), and the
hourly function that runs it (``handler``)."""
