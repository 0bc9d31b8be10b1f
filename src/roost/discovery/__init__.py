"""Discovery: find every machine on the site's subnets, what it runs, and wake it.

Modules: ``arp`` (ARP codec, sweep state machine, AF_PACKET sweeper), ``passive`` (gratuitous
ARP and DHCP sighting), ``tcpscan``/``udpscan`` (port scan engines), ``oui``/``services``
(offline vendor and IANA service lookups), ``wol`` (magic packets and wake confirmation),
``targets`` (what may be scanned), ``models``/``store`` (tables and how results change them),
``scans`` (one running scan), ``service`` (the service ``roost serve`` runs), ``netns``
(engine threads, optionally inside a network namespace). See docs/discovery.md.
"""
