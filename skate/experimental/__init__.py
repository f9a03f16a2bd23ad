"""Experimental APIs, as `ray.experimental` (`skate.experimental.internal_kv`)."""
