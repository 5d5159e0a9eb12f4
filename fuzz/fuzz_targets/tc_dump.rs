//! `actuators::tc::decode_dump`: the kernel's link, qdisc, class and filter dumps, from every pod
//! namespace the reconciler enters (a pod can put what it likes in its own namespace's tc).
//!
//! Beyond "no panic": what enforcer decodes it can write back: an HTB class, an HTB root's
//! default and a redirect, encoded by the codec and decoded again, come back the same (the
//! reconciler compares what it wants with what it decoded, so a lossy decode would make it
//! rewrite the node's classes for ever).

#![no_main]

use enforcer::{
    actuators::tc::{Dumped, codec::to_bytes, decode_dump},
    model::tc::{Filter, ROOT_PARENT, TcOp},
};
use libfuzzer_sys::fuzz_target;

fn again(op: TcOp) -> Dumped {
    let decoded = decode_dump(&to_bytes(&op.message()));
    assert_eq!(decoded.len(), 1, "{op:?} -> {decoded:?}");
    decoded.into_iter().next().unwrap()
}

fuzz_target!(|data: &[u8]| {
    for d in decode_dump(data) {
        match d {
            // A class under `root` is decoded as its qdisc's child: written back, it names
            // its qdisc, which is the same class (unless its qdisc is `root` itself).
            Dumped::Class(class) if class.parent != ROOT_PARENT => {
                let back = again(TcOp::AddClass { ifindex: 7, class });
                assert_eq!(back, Dumped::Class(class));
            }
            Dumped::Qdisc(q) if q.kind == "htb" => {
                if let Some(default_minor) = q.htb_default {
                    let Dumped::Qdisc(back) = again(TcOp::ReplaceRoot {
                        ifindex: q.ifindex,
                        default_minor,
                    }) else {
                        panic!("a root qdisc decoded as something else");
                    };
                    assert_eq!((back.ifindex, back.htb_default), (q.ifindex, q.htb_default));
                }
            }
            Dumped::Filter(Filter::Redirect {
                prio,
                target_ifindex,
                ..
            }) => {
                let Dumped::Filter(Filter::Redirect {
                    prio: p,
                    target_ifindex: t,
                    ..
                }) = again(TcOp::AddRedirect {
                    ifindex: 7,
                    prio,
                    target_ifindex,
                })
                else {
                    panic!("a redirect decoded as something else");
                };
                assert_eq!((p, t), (prio, target_ifindex));
            }
            _ => {}
        }
    }
});
