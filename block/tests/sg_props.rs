//! Properties of scatter-gather lists: splitting, slicing and concatenation keep every byte's
//! address, in order.

use block::{MemAddr, Segment, SgError, SgList};
use proptest::prelude::*;

const CAP: usize = 8;

/// The address of every byte the list describes, in order.
fn byte_addresses<const N: usize>(list: &SgList<N>) -> Vec<u64> {
    list.segments()
        .iter()
        .flat_map(|s| (0..s.len as u64).map(move |i| s.addr.0 + i))
        .collect()
}

fn segments() -> impl Strategy<Value = Vec<Segment>> {
    prop::collection::vec(
        (0u64..1 << 20, 0u32..300).prop_map(|(a, l)| Segment::new(MemAddr(a * 7), l)),
        0..CAP,
    )
}

proptest! {
    #[test]
    fn split_then_concatenate_is_identity(segs in segments(), cut in any::<prop::sample::Index>()) {
        let list = SgList::<CAP>::from_segments(&segs).unwrap();
        let offset = cut.index(list.total_len() as usize + 1) as u64;
        let (head, tail) = list.split_at(offset).unwrap();
        prop_assert_eq!(head.total_len(), offset);
        prop_assert_eq!(head.total_len() + tail.total_len(), list.total_len());
        let mut joined = head.clone();
        joined.extend_from(&tail).unwrap();
        prop_assert_eq!(byte_addresses(&joined), byte_addresses(&list));
        prop_assert!(head.segments().len() <= list.segments().len());
        prop_assert!(tail.segments().len() <= list.segments().len());
    }

    #[test]
    fn slice_matches_flat_model(segs in segments(), a in any::<prop::sample::Index>(), b in any::<prop::sample::Index>()) {
        let list = SgList::<CAP>::from_segments(&segs).unwrap();
        let total = list.total_len() as usize;
        let offset = a.index(total + 1);
        let len = b.index(total - offset + 1);
        let slice = list.slice(offset as u64, len as u64).unwrap();
        let flat = byte_addresses(&list);
        prop_assert_eq!(byte_addresses(&slice), flat[offset..offset + len].to_vec());
        prop_assert!(slice.segments().iter().all(|s| s.len > 0));
        for (i, addr) in flat.iter().enumerate().skip(offset).take(len) {
            prop_assert_eq!(slice.address_of((i - offset) as u64), Some(MemAddr(*addr)));
        }
    }

    #[test]
    fn slices_past_the_end_are_refused(segs in segments(), extra in 1u64..1000) {
        let list = SgList::<CAP>::from_segments(&segs).unwrap();
        prop_assert_eq!(list.slice(0, list.total_len() + extra), Err(SgError::OutOfRange));
        prop_assert_eq!(list.split_at(list.total_len() + extra).unwrap_err(), SgError::OutOfRange);
    }

    #[test]
    fn splitting_into_many_pieces_and_joining_keeps_order(segs in segments(), cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..6)) {
        let list = SgList::<CAP>::from_segments(&segs).unwrap();
        let total = list.total_len() as usize;
        let mut offsets: Vec<u64> = cuts.iter().map(|c| c.index(total + 1) as u64).collect();
        offsets.push(0);
        offsets.push(total as u64);
        offsets.sort_unstable();
        let mut joined = SgList::<CAP>::new();
        for pair in offsets.windows(2) {
            let piece = list.slice(pair[0], pair[1] - pair[0]).unwrap();
            joined.extend_from(&piece).unwrap();
        }
        prop_assert_eq!(byte_addresses(&joined), byte_addresses(&list));
    }
}
