"""SIP2 (3M Standard Interchange Protocol 2.00), the protocol of library systems (Koha,
Evergreen…): the codec (`codec`), a pooled TCP/TLS client (`client`) and a simulator
(`simulator`) for the tests and the demo. No Django here: the simulator runs on its own.
See docs/connectors/library.md."""
