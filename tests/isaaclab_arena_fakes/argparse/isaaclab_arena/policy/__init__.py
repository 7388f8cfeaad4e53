"""Arena's own policies (none needed here); the registry imports this package lazily."""
