%% EUnit tests for consult_stanza's ack_element/1: the ack the shim writes from
%% a structured verdict's fields is, byte for byte, the one the sidecar's XML
%% gave (test/unit/grpc/structured-verdict.test.ts holds ack() to the same text).
-module(consult_stanza_tests).

-include_lib("eunit/include/eunit.hrl").

-define(ACK, <<"<message xmlns='jabber:client' type='mstat' msec_times='1733630000000' to='v1@localhost/web'>"
               "<body id='B&apos;1&amp;' stat='sent'/></message>">>).

ack_element_writes_the_sidecars_ack_test() ->
    El = consult_stanza:ack_element(#{to => <<"v1@localhost/web">>, body_id => <<"B'1&">>,
                                      msec_times => <<"1733630000000">>}),
    ?assertEqual(?ACK, fxml:element_to_binary(El)),
    ?assertEqual(El, fxml_stream:parse_element(?ACK)).
