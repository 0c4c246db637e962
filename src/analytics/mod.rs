//! Zones, counting lines and the traffic-jam / crowd / garbage / tamper rules.
pub mod crowd;
pub mod geom;
pub mod hold;
pub mod jam;
pub mod lines;
