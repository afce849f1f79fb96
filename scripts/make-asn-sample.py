#!/usr/bin/env python3
"""Writes samples/enrichment/asn-sample.mmdb: a tiny ASN database in the
MaxMind DB format (GeoLite2-ASN field names), for the demo and the tests.

The networks are illustrative, not a copy of any vendor's data: the AWS and
DigitalOcean ranges named in the UNC6395 reports, Tor's usual hosting, and
the documentation ranges the samples use. Regenerate with
    python3 -m venv /tmp/v && /tmp/v/bin/pip install mmdb-writer netaddr
    /tmp/v/bin/python scripts/make-asn-sample.py
"""
from netaddr import IPSet
from mmdb_writer import MMDBWriter, MmdbU32

NETWORKS = [
    ("44.192.0.0/11", 14618, "AMAZON-AES"),
    ("3.224.0.0/12", 14618, "AMAZON-AES"),
    ("208.68.36.0/22", 14061, "DIGITALOCEAN-ASN"),
    ("185.220.101.0/24", 208294, "Example Anonymizing Hosting"),
    ("203.0.113.0/24", 64500, "Example Cloud (documentation range)"),
    ("198.51.100.0/24", 64501, "Example Corp Datacenter (documentation range)"),
    ("192.0.2.0/24", 64502, "Example Office (documentation range)"),
]

writer = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoLite2-ASN", description={"en": "ccwatch sample ASN database"})
for net, asn, org in NETWORKS:
    writer.insert_network(IPSet([net]), {"autonomous_system_number": MmdbU32(asn), "autonomous_system_organization": org})
writer.to_db_file("samples/enrichment/asn-sample.mmdb")
