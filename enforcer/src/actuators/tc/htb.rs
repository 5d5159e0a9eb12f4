//! HTB's netlink attribute numbers (`TCA_HTB_*`, from `linux/pkt_sched.h`), shared by the
//! encoder and the decoder.

pub(super) const TCA_HTB_PARMS: u16 = 1;
pub(super) const TCA_HTB_INIT: u16 = 2;
pub(super) const TCA_HTB_RATE64: u16 = 6;
pub(super) const TCA_HTB_CEIL64: u16 = 7;
