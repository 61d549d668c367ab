DESCRIPTIONS: dict[str, str] = {}
