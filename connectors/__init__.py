"""Connectors turn a source's items into plain drafts. They know no models.

Every connector, built-in or third-party, registers a `Connector` subclass under the entry-point
group ``mesh.connectors``; `connectors.base.registry` finds them.
"""
