//! The hub's own tests (the peer list's answer).

use super::*;

fn visitor(i: u32) -> Principal {
    Principal {
        user_id: None,
        username: format!("visitor:v{i:05}#0000"),
        display_name: format!("v{i:05}"),
        kind: AccountKind::Visitor,
        session_id: format!("s{i}"),
    }
}

#[test]
fn a_get_list_answer_keeps_the_first_peers_by_name_however_many_are_online() {
    let hub = Hub::new(SystemLog::disabled());
    let online = MAX_PEERS_LISTED as u32 + 500;
    // Listed in reverse, so the first by name came last.
    for i in (0..online).rev() {
        let id = ConnId::from(i);
        let (tx, _rx) = mpsc::channel(1);
        let addr = SocketAddr::from(([127, 0, 0, 1], 20_000 + i as u16));
        hub.add_conn(id, addr, format!("{i:064x}"), tx, CancellationToken::new());
        hub.bind(id, visitor(i), Presence::Online);
        hub.submit(id, addr, 1).expect("listed");
    }
    let asker = visitor(online + 1);
    let listed = hub.peers(&asker, None, &HashSet::new());
    assert_eq!(listed.len(), MAX_PEERS_LISTED);
    let names: Vec<&str> = listed.iter().map(|p| p.username.as_str()).collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(names, sorted, "in name order");
    assert_eq!(names[0], "visitor:v00000#0000");
    assert_eq!(
        names[MAX_PEERS_LISTED - 1],
        visitor(MAX_PEERS_LISTED as u32 - 1).username
    );
    // Users named in the question are found past the cut.
    for user in [1, 2] {
        let id = ConnId::from(online + user as u32);
        let (tx, _rx) = mpsc::channel(1);
        let addr = SocketAddr::from(([127, 0, 0, 2], 20_000 + user as u16));
        hub.add_conn(id, addr, format!("{id:064x}"), tx, CancellationToken::new());
        let principal = Principal {
            user_id: Some(user),
            username: format!("zed{user}"),
            kind: AccountKind::User,
            ..visitor(online + user as u32)
        };
        hub.bind(id, principal, Presence::Online);
        hub.submit(id, addr, 1).expect("listed");
    }
    let named = hub.peers(&asker, Some(&HashSet::from([1, 2])), &HashSet::new());
    let names: Vec<&str> = named.iter().map(|p| p.username.as_str()).collect();
    assert_eq!(names, ["zed1", "zed2"]);
    // And a blocker is left out.
    let named = hub.peers(&asker, Some(&HashSet::from([1, 2])), &HashSet::from([2]));
    assert_eq!(named.len(), 1);
}
