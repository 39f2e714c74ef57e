"""Names of the two agents (``evaluate --policy``): importing them builds and compiles nothing."""

IDEAL_OBSERVER = "ideal-observer"
SEARCH_ORACLE = "search-oracle"
AGENTS: tuple[str, ...] = (IDEAL_OBSERVER, SEARCH_ORACLE)
