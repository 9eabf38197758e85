"""Outbound feeds, by job: ``heads`` (what a page is made of, read for the conditional GET),
``entries`` (an activity as a feed item, per privacy tier), ``formats`` (RSS, Atom, JSON Feed
and Activity Streams 2.0 writers) and ``views`` (token resolution, 304s, the body cache,
throttling, and the page that manages a contact's tokens)."""
