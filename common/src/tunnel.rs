//! GRE with keys (RFC 2784, RFC 2890, RFC 5845) and IP-in-IP encapsulation; built with the data-plane work.
