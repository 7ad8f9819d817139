//! The hash map the model uses on its hot paths. SipHash (std's default) showed up as
//! ~13 % of broker CPU in a publish/consume profile; foldhash is several times faster and
//! still seeded per process, so clients cannot precompute colliding names.

pub type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
