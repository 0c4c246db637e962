//! Zones, counting lines and the traffic-jam / crowd / garbage / tamper rules.
