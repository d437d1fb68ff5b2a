%% The raw elements of consult traffic. ejabberd's xmpp codec keeps no
%% unknown attributes (realfrom, qchatid, channelid, body id...) and reads
%% type='consult' as normal. So the raw element a client sent is kept in the
%% packet's meta on the way in (c2s_handle_recv + user_send_packet), and the
%% element the sidecar wrote is what the recipient's c2s finally puts on the
%% wire (c2s_filter_send). Hooks registered by mod_consult.
-module(consult_stanza).

-export([c2s_handle_recv/3, user_send_packet/1, c2s_filter_send/1, deliver_as/2, strip_raw/1, bare/1,
         ack_element/1]).

-include("xmpp.hrl").

%% Our private child carrying the element to write, so that copies ejabberd
%% stores (offline messages, MAM) and re-routes later keep QChat's attributes.
-define(NS_RAW, <<"urn:xmpp:consult:raw:0">>).

%% Kept only for what may be consult traffic: a copy rides along with every
%% message it is attached to, and plain chat should not pay for that.
-spec c2s_handle_recv(ejabberd_c2s:state(), fxml:xmlel(), stanza() | {error, term()}) -> ejabberd_c2s:state().
c2s_handle_recv(State, #xmlel{name = <<"message">>, attrs = Attrs} = El, Pkt) ->
    case may_be_consult(fxml:get_attr_s(<<"type">>, Attrs), Pkt) of
        true -> State#{consult_raw => El};
        false -> maps:remove(consult_raw, State)
    end;
c2s_handle_recv(State, _El, _Pkt) ->
    maps:remove(consult_raw, State).

may_be_consult(<<"consult">>, _) -> true;
may_be_consult(<<"readmark">>, _) -> true;
may_be_consult(_, #message{to = #jid{} = To}) -> consult_grpc:watched(shop, bare(To));
may_be_consult(_, _) -> false.

-spec user_send_packet({stanza(), ejabberd_c2s:state()}) -> {stanza(), ejabberd_c2s:state()}.
user_send_packet({#message{} = Pkt0, State}) ->
    Pkt = strip_raw(Pkt0),  % only the server may say what gets written
    case maps:take(consult_raw, State) of
        {El, State1} -> {xmpp:put_meta(Pkt, consult_raw, strip_raw_el(El)), State1};
        error -> {Pkt, State}
    end;
user_send_packet(Acc) ->
    Acc.

%% The element the sidecar wrote, written as is (its attributes survive).
-spec c2s_filter_send({stanza() | fxml:xmlel(), ejabberd_c2s:state()}) ->
          {stanza() | fxml:xmlel(), ejabberd_c2s:state()}.
c2s_filter_send({#message{} = Pkt, State} = Acc) ->
    case wire_element(Pkt) of
        undefined -> Acc;
        El -> {El, force_mgmt_enqueue(State)}
    end;
c2s_filter_send(Acc) ->
    Acc.

wire_element(Pkt) ->
    case xmpp:get_meta(Pkt, consult_deliver, undefined) of
        undefined -> stored_element(Pkt);
        El -> El
    end.

%% A message back from offline storage: its raw element plus the storage's delay stamp.
stored_element(#message{sub_els = Els}) ->
    case [C || #xmlel{name = <<"raw">>, children = [#xmlel{} = C]} = W <- Els, is_raw_wrapper(W)] of
        [#xmlel{children = Children} = El | _] ->
            Delays = [encode_el(D) || D <- Els, is_delay(D)],
            El#xmlel{children = Children ++ Delays};
        [] -> undefined
    end.

is_raw_wrapper(#xmlel{name = <<"raw">>, attrs = Attrs}) -> fxml:get_attr_s(<<"xmlns">>, Attrs) == ?NS_RAW;
is_raw_wrapper(_) -> false.

is_delay(#delay{}) -> true;
is_delay(#xmlel{name = <<"delay">>, attrs = Attrs}) -> fxml:get_attr_s(<<"xmlns">>, Attrs) == ?NS_DELAY;
is_delay(_) -> false.

encode_el(#xmlel{} = El) -> El;
encode_el(Rec) -> xmpp:encode(Rec, ?NS_CLIENT).

%% Pkt, to be written as El. Live delivery uses the meta; the child is for
%% stored copies.
-spec deliver_as(message(), fxml:xmlel()) -> message().
deliver_as(Pkt, El) ->
    Wrapper = #xmlel{name = <<"raw">>, attrs = [{<<"xmlns">>, ?NS_RAW}], children = [El]},
    xmpp:put_meta(xmpp:append_subtags(strip_raw(Pkt), [Wrapper]), consult_deliver, El).

%% Without our child: only the server may say what gets written.
-spec strip_raw(message()) -> message().
strip_raw(Pkt) ->
    xmpp:set_els(Pkt, [E || E <- xmpp:get_els(Pkt), not is_raw_wrapper(E)]).

strip_raw_el(#xmlel{children = Children} = El) ->
    El#xmlel{children = [C || C <- Children, not is_raw_wrapper(C)]}.

%% Stream management counts and queues raw elements only when told to; without
%% this a client's ack of a raw element would exceed the server's count.
force_mgmt_enqueue(#{mgmt_state := S} = State) when S == active; S == pending; S == resumed ->
    State#{mgmt_force_enqueue => true};
force_mgmt_enqueue(State) ->
    State.

%% The mstat ack the sidecar asks for by its fields (a structured verdict),
%% element for element what its XML would parse to.
-spec ack_element(consult_pb:ack()) -> fxml:xmlel().
ack_element(#{to := To, body_id := Id, msec_times := Time}) ->
    #xmlel{name = <<"message">>,
           attrs = [{<<"xmlns">>, ?NS_CLIENT}, {<<"type">>, <<"mstat">>}, {<<"msec_times">>, Time}, {<<"to">>, To}],
           children = [#xmlel{name = <<"body">>, attrs = [{<<"id">>, Id}, {<<"stat">>, <<"sent">>}]}]}.

%% The bare JID as the sidecar's watch lists write it.
-spec bare(jid()) -> binary().
bare(#jid{luser = U, lserver = S}) -> <<U/binary, $@, S/binary>>.
