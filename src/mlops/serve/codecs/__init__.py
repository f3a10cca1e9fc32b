"""One codec per wire format, between the protocol and the data plane (``codecs.base.Codec``)."""
