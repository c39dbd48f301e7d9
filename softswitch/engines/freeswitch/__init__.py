"""FreeSWITCH 1.10: the Event Socket (esl/)."""
